"""One ComponentResource per unit of infrastructure. Components know nothing about config files."""
