package bundle

import (
	"cmp"
	"slices"
)

func sortNodes(ns []*node) {
	slices.SortFunc(ns, func(a, b *node) int {
		return cmp.Or(cmp.Compare(a.item, b.item), cmp.Compare(a.desc.Digest, b.desc.Digest))
	})
}
