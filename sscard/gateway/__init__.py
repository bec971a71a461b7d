"""The certificate application support platform (数字证书应用支撑平台): the HTTP gateway that
business systems call to sign, verify, encrypt, decrypt, check certificate status and
authenticate cardholders; ``sscard.gateway.client`` is its Python client."""
