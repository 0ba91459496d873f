"""Proven identity: who starts a run and who decides a request, proven rather than typed.

- :mod:`tern.identity.statement`: the canonical statement a principal signs and the digests it binds;
- :mod:`tern.identity.ssh`: SSH signatures made and checked by OpenSSH's ``ssh-keygen -Y``;
- :mod:`tern.identity.oidc`: the facility's sign-on (OAuth 2.0 device grant, ID-token verification);
- :mod:`tern.identity.verify`: checking a proof against the approval policy's principals;
- :mod:`tern.identity.uses`: single use of each statement (PostgreSQL).
"""
