"""JMAP for Mail (RFC 8621): the ``urn:ietf:params:jmap:mail``, ``submission`` and
``vacationresponse`` capabilities.  Work in progress: the modules below are being built;
the plugin registers its hooks once the methods are complete."""
