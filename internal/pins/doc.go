// Package pins holds no code; see pins.go (build tag tools) for why it exists.
package pins
