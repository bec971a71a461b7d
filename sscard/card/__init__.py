"""The social security card (社会保障卡): codecs, data validation, key diversification, APDUs,
transports (in-process, PC/SC) and a typed card client. See ../shared/CARD_SPEC.md."""
