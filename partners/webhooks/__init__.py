"""Webhook endpoints (partner self-service) and signed delivery (Standard Webhooks)."""
