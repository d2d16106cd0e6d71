"""OAuth 2.0 authorization server (authlib's core adapted) and resource-side token checks."""
