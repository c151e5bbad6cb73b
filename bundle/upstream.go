package bundle

import (
	"net/url"
	"strings"
)

// NormalURL is an upstream URL as Ferry compares identities (an item's source with a Flux
// object's url, on both sides): no credentials, query or fragment, scheme and host in lower
// case, no trailing "/" or ".git".
func NormalURL(s string) string {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return strings.TrimSuffix(strings.TrimSuffix(s, "/"), ".git")
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment = nil, "", false, ""
	u.Scheme, u.Host = strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	return strings.TrimSuffix(strings.TrimSuffix(u.String(), "/"), ".git")
}
