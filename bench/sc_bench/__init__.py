"""The relay benchmark behind bench/run, one idea per module:

  common      paths, logging and the harness's two exceptions
  processes   starting and stopping processes; CPU, RSS and TCP segments from /proc
  packages    the Debian packages a run needs, installed with apt-get when missing
  journal     what the report prints about the run: commands, configs, notes, errors
  peers       the relays (HAProxy, nginx stream, socat, socket-connector; their TLS forms and
              stunnel for issue 21): configs, start, stop
  backends    the servers behind the relays: iperf3, sockperf, the nginx HTTP backend
  scrape      issue 22's scraper: GET /metrics ten times a second from the scraped relay
  tls         issue 21: the run's certificate, the TLS client wrapper, the probe of each TLS relay
  loads       one measurement through one relay: iperf3, the pusher, sockperf, wrk, idle pairs,
              rendezvous sessions/s beside the proxy's conn/s, rendezvous memory; TLS throughput,
              handshakes/s and conn/s, idle TLS pairs
  schedule    the interleaved repeats and the paired rounds
  micro       the library's own micro-benchmarks, if the build has any
  results     medians and ratios over the records, and the JSON file
  targets     the targets of issues 4, 20, 21 and 22, met or not
  report      the markdown report
  chart       the gnuplot chart
  harness     one run: settings from the command line, then all of the above in order
  cli         the command line, signals and cleanup
"""
