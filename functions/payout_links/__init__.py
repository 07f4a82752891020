"""payout-link-proxy: create Dots payout links for frontends and partners, exactly once per intent."""
