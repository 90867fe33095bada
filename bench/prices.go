package bench

// DigitalOcean list prices (USD per month) the bill compares. Each names
// its public source; check them before publishing a new report, prices
// change (the stored copies of DO's pages the harness was written against
// are noted).
var prices = []struct {
	Item   string
	USD    float64
	Source string
	Note   string
}{
	{"Droplet s-1vcpu-512mb-10gb", 4, "https://www.digitalocean.com/pricing/droplets",
		"Basic, Regular SSD; $4/mo since DO's July 2022 price change (512 MiB, 10 GiB, 500 GiB transfer)"},
	{"Droplet s-1vcpu-1gb", 6, "https://www.digitalocean.com/pricing/droplets", "Basic, Regular SSD (1 GiB, 25 GiB, 1,000 GiB transfer)"},
	{"Spaces subscription", 5, "https://docs.digitalocean.com/products/spaces/details/pricing/",
		"includes 250 GiB storage and 1,024 GiB outbound transfer; one subscription covers every bucket of the account"},
	{"Reserved IPv4, assigned", 0, "https://docs.digitalocean.com/products/networking/reserved-ips/details/pricing/",
		"\"Assigned reserved IPv4 addresses are free, but unassigned reserved IPv4 addresses are not\" (How to Reassign or Unassign Reserved IPs); unassigned: $5/mo ($0.00744/h)"},
	{"Regional Load Balancer, per node", 12, "https://docs.digitalocean.com/products/networking/load-balancers/details/pricing/",
		"the stored copy of the product page says $10/node/month (before July 2022); $12 is the current list price — verify"},
}

func price(item string) float64 {
	for _, p := range prices {
		if p.Item == item {
			return p.USD
		}
	}
	panic("bench: no price for " + item)
}
