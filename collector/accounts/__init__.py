"""People and their credentials beyond storage: who may hold which role (users, duties), logging in and
its throttle. The rows themselves are collector/store/people.py's."""
