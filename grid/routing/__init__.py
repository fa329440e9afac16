"""Routing: the GridView a router sees, the Policy interface, and the policies."""
