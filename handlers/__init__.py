"""Thin HTTP handlers: authenticate -> validate -> call one domain/storage function -> serialize."""
