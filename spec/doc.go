// Package spec reads the mirror spec (ferry.yaml): the Git repositories, Helm charts and
// container images a bundle carries, and how each is resolved. Parse checks every field and
// reports every problem at once, each naming its field (images[2].semver: ...).
package spec
