// Package deps holds no code: its test is the module's one dependency test,
// what dynia-pull (on every node) and the packages it links must not link,
// directly or through another package. The linter's depguard rules
// (.golangci.yml) say the same for direct imports, as the code is written;
// this test also sees what a dependency brings with it.
package deps
