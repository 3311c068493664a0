"""Registrations of the component families, one module each.

Every module of this package is imported by :func:`deepinv_pnn.registry.components`
on first use; a module registers its entries with :func:`deepinv_pnn.registry.register`.
"""
