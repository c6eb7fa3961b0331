"""Process wiring: the aiohttp app, middlewares, Socket.IO, embedded services, metrics."""
