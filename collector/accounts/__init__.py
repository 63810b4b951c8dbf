"""People and their credentials beyond storage: the login throttle."""
