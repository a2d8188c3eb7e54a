"""The HTTP service: FastAPI app factory, routes, schemas, auth, background jobs."""
