"""The key management centre (KMC): keymgmt imports only sscard (DESIGN.md §3).

- ``shares``, ``ceremony``, ``ceremony_log``: M-of-N custodian shares, the key ceremony, unseal.
- ``storage``, ``hsm``: the storage key, in software or non-extractable in a PKCS#11 token.
- ``db`` (+ ``migrations``): the KMC's own database.
- ``service``: escrow, dual-control and judicial recovery, callers (``KeyManagementCentre``).
- ``pkcs12``: PKCS#12 for recovered keys, SM2 included.
- ``cardkeys``, ``export_seal``: card master keys, per-card derivation, PSAM export, Step 1/2.
- ``web``, ``client``, ``cli``: the HTTP service, its Python client, ``sscard kmc ...``.

Envelope formats (GM/T 0009 SM2EnvelopedKey, GM/T 0016 ENVELOPEDKEYBLOB) live in
``sscard.crypto.envelopes`` so that the card side can use them too. See docs/kmc-guide.md.
"""
