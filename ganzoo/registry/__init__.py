"""Plugins found through entry points and loaded (``loading``), and the components they register, built from
validated options and checked against their kind's interface (``components``)."""
