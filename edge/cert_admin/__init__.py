"""`burrow-edge cert …`: the certificate commands."""
