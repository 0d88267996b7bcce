"""ASGI middleware, one job each, in the order app.py stacks them (outermost first):
request id, access log, request metrics, security headers, header limit."""
