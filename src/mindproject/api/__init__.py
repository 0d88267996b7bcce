"""HTTP routes, one module per resource. Routes parse, authorize and hand streams on."""
