"""ticketd, as installed: the checkout's daemon, storage and templates under the distribution's own name.

In the checkout they stay at the top level; these are symbolic links to them, so the same
imports (``ticketd.daemon...``) work from the checkout and from an installed wheel, and nothing
lands at the top level of site-packages that another distribution uses (python-daemon owns
``daemon``).
"""
