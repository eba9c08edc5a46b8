"""The command-line client of the HTTPS API: `scheduler jobs ...`, `scheduler collections ...`.

It speaks to a running service over HTTPS with a client certificate, never to the database.
"""
