// Package simulate generates IM usage events: paced live traffic handed to a publish function (Traffic, for immeter simulate and immeter run --simulate), and reproducible streams of encoded events for the benchmarks (Stream).
package simulate
