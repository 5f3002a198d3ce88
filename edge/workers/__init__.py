"""`burrow-edge serve --workers N`: a supervisor process and N worker processes sharing the
listeners (SO_REUSEPORT), the registry and one metrics view; a request that lands on a worker
without a session of its tunnel is forwarded to a worker that has one."""
