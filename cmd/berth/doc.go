// Command berth is the Berth registry's command line: `berth serve` runs the registry, `berth version` and `berth config` inspect the build and the configuration.
// It may import every Berth package; it only parses flags and config, builds the pieces and wires them, and holds no registry logic of its own.
package main
