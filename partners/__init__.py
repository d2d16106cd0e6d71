"""Partners: onboarding workflow, operators and the operations console, the partner
self-service API, webhook endpoints and signed webhook delivery."""
