"""Identity and access: signing keys, bearer tokens, roles, revocations (docs/security.md)."""
