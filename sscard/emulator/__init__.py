"""A software social security card and PSAM (CARD_SPEC.md), reachable in-process or through
pcscd via vsmartcard's vpcd driver. Card state lives in a file; every write is atomic."""
