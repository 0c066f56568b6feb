"""An emulator of the REST API of OpenSearch Service domains, reached by a domain's endpoint in the `Host` header."""

from sandbox.opensearch.app import OpenSearchApp, is_domain_host

__all__ = ["OpenSearchApp", "is_domain_host"]
