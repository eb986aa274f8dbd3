#pragma once

#include <socket_connector/address.hpp>
#include <socket_connector/auth.hpp>
#include <socket_connector/concepts.hpp>
#include <socket_connector/connection.hpp>
#include <socket_connector/connector.hpp>
#include <socket_connector/keep_alive.hpp>
#include <socket_connector/logging.hpp>
#include <socket_connector/metrics.hpp>
#include <socket_connector/options.hpp>
#include <socket_connector/proxy_protocol.hpp>
#include <socket_connector/run.hpp>
#include <socket_connector/side.hpp>
#include <socket_connector/socket_options.hpp>
#include <socket_connector/stats.hpp>
#include <socket_connector/version.hpp>
