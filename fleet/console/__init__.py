"""The web console (`fleet console`): tenants, their runs and each run's timeline in a
browser, and the actions an observer takes from there (signal, cancel, download a database
as of a time, fork). A long-running server on top of ops/, like the gateway; cli/ only
starts it. Templates and static files are package data (they ship in the wheel).
"""
