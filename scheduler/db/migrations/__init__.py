"""Alembic's migrations of the schema, one file per revision in `versions/`.

They are run by `scheduler.db.schema` (`scheduler db upgrade`), never by an `alembic.ini`.
"""
