"""Worker processes: local runtimes run outside the gateway, which talks to them over a socket."""
