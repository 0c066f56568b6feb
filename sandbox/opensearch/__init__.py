"""Emulator of the REST API of OpenSearch Service domains, reached by a domain's endpoint in the `Host` header."""
