"""The echo app behind wsgiref.validate: any protocol slip by the shim raises
AssertionError inside the app, which the shim turns into a 500."""

from wsgiref.validate import validator

from echo import app as _echo

app = validator(_echo)
