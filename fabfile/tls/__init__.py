"""HTTPS under the site's own names: cluster.domain/aliases/tls (config.py), the Route53 records
(provision/dns.py), the certificate stage on the proxy (commands.py builders, stage.py runner), status lines."""
