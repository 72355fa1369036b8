package simulate

import "math/rand/v2"

// Weights of the enumerated fields, in the order of schemas.Channels,
// schemas.Platforms, schemas.GroupTypes and schemas.Medias: the mix of both
// generators.
var (
	channelWeights   = []float64{50, 40, 5, 5}
	platformWeights  = []float64{40, 35, 10, 5, 4, 1, 3, 2}
	groupTypeWeights = []float64{30, 30, 20, 10, 10}
	mediaWeights     = []float64{70, 30}
)

// pick returns one of values with the given relative weights.
func pick(r *rand.Rand, values []string, weights []float64) string {
	var total float64
	for _, w := range weights {
		total += w
	}
	x := r.Float64() * total
	for i, w := range weights {
		if x < w {
			return values[i]
		}
		x -= w
	}
	return values[len(values)-1]
}
