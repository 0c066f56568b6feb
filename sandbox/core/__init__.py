"""What every emulator in the sandbox shares: botocore's service models as the protocol (routing, parsing,
validation, rendering, error shapes), the caller a request comes from, and the WSGI plumbing around both."""
