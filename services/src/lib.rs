//! The users, catalog and orders REST services (each on its own database). Not built yet: see the README.
