"""Domain errors of the partners package (problems with a stable code)."""

from __future__ import annotations

from gateway.errors import Conflict, Forbidden, NotFound, Problem, ValidationFailed


class PartnerError(Problem):
    status, code, title = 400, "partner_error", "Partner request refused"


class PartnerNotFound(NotFound):
    code, title = "partner_not_found", "No such partner"


class TransitionNotAllowed(Conflict):
    code, title = "transition_not_allowed", "This status change is not allowed"


class MakerCheckerViolation(Conflict):
    code, title = "maker_checker_violation", "The same operator cannot review and approve"


class RoleRequired(Forbidden):
    code, title = "role_required", "Your role does not allow this"


class ReasonRequired(ValidationFailed):
    code, title = "reason_required", "A reason is required"


class OperatorNotFound(NotFound):
    code, title = "operator_not_found", "No such operator"


class OperatorExists(Conflict):
    code, title = "operator_exists", "An operator with this user name exists"


class LoginFailed(Problem):
    status, code, title = 401, "login_failed", "Login failed"


class WeakPassword(ValidationFailed):
    code, title = "weak_password", "The password is too weak"


class EndpointNotFound(NotFound):
    code, title = "webhook_endpoint_not_found", "No such webhook endpoint"


class DeliveryNotFound(NotFound):
    code, title = "webhook_delivery_not_found", "No such webhook delivery"


class EventNotFound(NotFound):
    code, title = "event_not_found", "No such event"


class EndpointDisabled(Conflict):
    code, title = "webhook_endpoint_disabled", "The webhook endpoint is disabled"


class TooManyEndpoints(Conflict):
    code, title = "too_many_webhook_endpoints", "Too many webhook endpoints"


class ClientNotFound(NotFound):
    code, title = "client_not_found", "No such client"


class PartnerNotReady(Conflict):
    code, title = "partner_not_ready", "The partner is not approved for production"


class InvalidUsername(ValidationFailed):
    code, title = "invalid_username", "The user name is not allowed"


class InvalidRoles(ValidationFailed):
    code, title = "invalid_roles", "Choose the operator's roles"


class InvalidTotpCode(ValidationFailed):
    code, title = "invalid_totp_code", "The authenticator code does not match"


class TotpSetupExpired(ValidationFailed):
    code, title = "totp_setup_expired", "The TOTP set-up expired"
