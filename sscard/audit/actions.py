"""``AuditAction``: every action the CA, KMC, RA, gateway and identity provider write to the
audit log, named ``<zone>.<object>.<verb>`` (``ca.*``, ``kmc.*``, ``ra.*``, ``gateway.*``,
``idp.*``).

One catalogue, so that an auditor can filter by zone or by object (``sscard audit show
--action ca.certificate``) and a new action is added here rather than spelt at a call site.
Members are strings, so they go wherever an action string goes.
"""

from __future__ import annotations

import enum

ZONES = ("ca", "kmc", "ra", "gateway", "idp")


class AuditAction(enum.StrEnum):
    # -- CA (written by ca.authority.CertificateAuthority and ca.authority.initialise) --------
    CA_INIT = "ca.hierarchy.init"
    CA_ISSUING_IMPORT = "ca.hierarchy.import_issuing"
    CA_CERTIFICATE_ISSUE = "ca.certificate.issue"
    CA_CERTIFICATE_REVOKE = "ca.certificate.revoke"
    CA_CRL_ISSUE = "ca.crl.issue"
    CA_API_REFUSED = "ca.api.refused"
    CA_ISSUE_DUAL_CONTROL = "ca.issue.dual_control"
    CA_PRINCIPAL_ADD = "ca.principal.add"
    CA_PRINCIPAL_REMOVE = "ca.principal.remove"
    CA_ADMIN_ADD = "ca.admin.add"
    CA_ADMIN_REMOVE = "ca.admin.remove"

    # -- KMC (keymgmt.service, keymgmt.ceremony, keymgmt.cardkeys) ---------------------------
    KMC_CEREMONY = "kmc.ceremony.run"
    KMC_UNSEAL = "kmc.ceremony.unseal"
    KMC_CALLER_ADD = "kmc.caller.add"
    KMC_CALLER_DEACTIVATE = "kmc.caller.deactivate"
    KMC_ESCROW_GENERATE = "kmc.escrow.generate"
    KMC_ESCROW_CERTIFICATE = "kmc.escrow.certificate"
    KMC_RECOVERY_REQUEST = "kmc.recovery.request"
    KMC_RECOVERY_JUDICIAL_REQUEST = "kmc.recovery.judicial.request"
    KMC_RECOVERY_APPROVE = "kmc.recovery.approve"
    KMC_RECOVERY_REJECT = "kmc.recovery.reject"
    KMC_RECOVERY_COMPLETE = "kmc.recovery.complete"
    KMC_CARDKEY_GENERATE = "kmc.cardkey.generate"
    KMC_CARDKEY_IMPORT_ROOT = "kmc.cardkey.import_root"
    KMC_CARDKEY_EXPORT_PSAM = "kmc.cardkey.export_psam"

    # -- RA (ra.service, ra.web) ----------------------------------------------------------
    RA_ACCESS = "ra.access"
    RA_CSRF = "ra.csrf"
    RA_LOGIN = "ra.login"
    RA_LOGOUT = "ra.logout"
    RA_OFFICER_ADD = "ra.officer.add"
    RA_OFFICER_CERTIFICATE = "ra.officer.certificate"
    RA_OFFICER_UNLOCK = "ra.officer.unlock"
    RA_OFFICER_ENABLE = "ra.officer.enable"
    RA_OFFICER_DISABLE = "ra.officer.disable"
    RA_OFFICER_PASSWORD = "ra.officer.password"  # noqa: S105  (an action name, no secret)
    RA_CLIENT_ADD = "ra.client.add"
    RA_BATCH_AUTHORISE = "ra.batch.authorise"
    RA_CARD_ACTIVATE = "ra.card.activate"
    RA_CARD_LOOKUP = "ra.card.lookup"
    RA_ENROLLMENT_SUBMIT = "ra.enrollment.submit"
    RA_ENROLLMENT_ISSUE = "ra.enrollment.issue"
    RA_ENROLLMENT_ROLLBACK = "ra.enrollment.rollback"
    RA_REQUEST_APPROVE = "ra.request.approve"
    RA_REQUEST_REJECT = "ra.request.reject"
    RA_REVOCATION_SUBMIT = "ra.revocation.submit"
    RA_REVOCATION_EXECUTE = "ra.revocation.execute"
    RA_RENEWAL_SUBMIT = "ra.renewal.submit"
    RA_RENEWAL_ISSUE = "ra.renewal.issue"
    RA_RECOVERY_SUBMIT = "ra.recovery.submit"
    RA_RECOVERY_EXECUTE = "ra.recovery.execute"

    # -- gateway (sscard.gateway.service) ---------------------------------------------------
    GATEWAY_SIGN = "gateway.sign"
    GATEWAY_SIGN_BATCH = "gateway.sign_batch"
    GATEWAY_VERIFY = "gateway.verify"
    GATEWAY_VERIFY_BATCH = "gateway.verify_batch"
    GATEWAY_ENCRYPT = "gateway.encrypt"
    GATEWAY_DECRYPT = "gateway.decrypt"
    GATEWAY_STATUS = "gateway.status"
    GATEWAY_CARDHOLDER_CHALLENGE = "gateway.cardholder_challenge"
    GATEWAY_CARDHOLDER_VERIFY = "gateway.cardholder_verify"

    # -- identity provider (sscard.idp) -----------------------------------------------------
    IDP_LOGIN = "idp.login"
    IDP_AUTHORIZE = "idp.authorize"
    IDP_CODE_EXCHANGE = "idp.code.exchange"
    IDP_LOGOUT = "idp.logout"
    IDP_CLIENT_ADD = "idp.client.add"
    IDP_CLIENT_REMOVE = "idp.client.remove"
    IDP_KEY_ROTATE = "idp.key.rotate"

    @property
    def zone(self) -> str:
        return self.value.split(".", 1)[0]

    @property
    def local_name(self) -> str:
        """The name without its zone (``recovery.approve``), as the KMC's own event table and
        older records spell it."""
        return self.value.split(".", 1)[1]
