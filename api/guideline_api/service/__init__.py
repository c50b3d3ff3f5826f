"""What a request does, one module per concern: the routes call these and translate
HTTP only."""
