# Run with cmake -P. Installs the build tree PROJECT_BINARY_DIR into PREFIX, then configures, builds
# and runs the consumer project SOURCE_DIR in BINARY_DIR with CXX_COMPILER. Any failing step is fatal.
foreach(var IN ITEMS PROJECT_BINARY_DIR PREFIX SOURCE_DIR BINARY_DIR CXX_COMPILER)
    if(NOT DEFINED ${var})
        message(FATAL_ERROR "run.cmake: -D${var}=... is required")
    endif()
endforeach()
if(NOT BUILD_TYPE)
    set(BUILD_TYPE Release)
endif()

function(step name)
    message(STATUS "cmake_consumer: ${name}: ${ARGN}")
    execute_process(COMMAND ${ARGN} RESULT_VARIABLE result)
    if(NOT result EQUAL 0)
        message(FATAL_ERROR "cmake_consumer: ${name} failed (${result})")
    endif()
endfunction()

file(REMOVE_RECURSE ${PREFIX} ${BINARY_DIR})
step(install ${CMAKE_COMMAND} --install ${PROJECT_BINARY_DIR} --prefix ${PREFIX})
step(configure ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${BINARY_DIR}
    -DCMAKE_CXX_COMPILER=${CXX_COMPILER}
    -DCMAKE_BUILD_TYPE=${BUILD_TYPE}
    -DCMAKE_PREFIX_PATH=${PREFIX})
step(build ${CMAKE_COMMAND} --build ${BINARY_DIR})
step(run ${BINARY_DIR}/cmake_consumer)

# The command is installed too, and reports the package's version.
if(BINDIR AND VERSION)
    set(command ${PREFIX}/${BINDIR}/socket-connector)
    execute_process(COMMAND ${command} --version RESULT_VARIABLE result OUTPUT_VARIABLE out)
    if(NOT result EQUAL 0 OR NOT out STREQUAL "socket-connector ${VERSION}\n")
        message(FATAL_ERROR "cmake_consumer: ${command} --version gave ${result}: '${out}'")
    endif()
endif()
