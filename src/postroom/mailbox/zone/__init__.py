"""DNS records of linked domains: SPF and DMARC logic, rendering for a DNS admin."""
