"""The golemish host: WASI preview 1, the golemish host API (durable HTTP, sleep,
promises, worker calls) and outgoing HTTP for guests."""
