"""`voicebot bench`: the performance targets of DESIGN.md, measured on this machine.

One module per benchmark (capacity, cps, latency, bargein, asr, understanding), each a
``run(options) -> dict`` that is bounded in time and count, ends every process
it starts by PID and talks only to 127.0.0.1. Shared helpers: ``stats``
(percentiles, frame intervals), ``procstat`` (CPU and memory from /proc),
``sipp`` (scenarios shipped in ``sipp/``), ``fixtures`` (speech WAVs, μ-law,
pcap), ``timing`` (a session factory that records the media clock).
"""
