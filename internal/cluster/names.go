package cluster

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// Word lists for two-word node ids (<adjective>-<animal>). Plain, friendly
// words only: ids appear in hostnames, logs and support tickets. Lowercase
// ASCII letters only, so every id is a valid DNS label.
var adjectives = strings.Fields(`
able agile airy amber ample apt arctic ardent autumn azure
balmy bold brave breezy bright brisk bronze bubbly busy calm
candid carefree cheery chief civil clever cloudy coastal cobalt cool
copper cosmic cozy crisp curious cyan dapper daring dawn deft
dewy eager early earnest easy elated elder electric emerald epic
even exact fair fancy fast fearless festive fiery fine firm
fleet fluent fond frank free fresh frosty gentle giant gifted
glad gleaming glossy golden grand grateful great green happy hardy
hasty hazel helpful heroic honest hopeful humble icy ideal indigo
inner ivory jade jolly jovial joyful keen kind lavish lean
level light lime lively lofty loyal lucid lucky lunar magic
mellow merry mighty mild minty misty modest mossy nimble noble
north oaken ocean olive opal orange patient peaceful pearl placid
plucky polar polished polite prime proud quick quiet radiant rapid
ready regal rosy royal ruby rustic sandy sapphire scarlet serene
sharp shiny silent silver simple sleek smart smooth snowy solar
solid sonic spry starry steady stellar stoic sturdy sunny super
swift tame tidy timely tranquil true trusty upbeat urban valiant
velvet vivid warm wavy wise witty young zealous zesty
`)

var animals = strings.Fields(`
aardvark albatross alpaca anchovy antelope armadillo auk badger barracuda basilisk
beagle bear beaver bison bobcat bongo buffalo bunny camel canary
capybara caribou cat cheetah chinchilla chipmunk cicada clam cobra condor
corgi cougar cow coyote crab crane cricket crow cuckoo dingo
dolphin donkey dove dragonfly duck eagle eel egret elk emu
falcon ferret finch firefly flamingo fox frog gazelle gecko gerbil
gibbon giraffe gnu goat goldfish goose gopher gorilla grouse gull
hamster hare hawk hedgehog heron herring hippo hornet horse hound
ibex ibis iguana impala jackal jaguar jay jellyfish kangaroo kestrel
kingfisher kiwi koala koi krill ladybug lark lemming lemur leopard
lion lizard llama lobster lynx macaw magpie mallard manatee mantis
marmot marten meerkat mink mole mongoose moose moth mouse mule
narwhal newt nightingale ocelot octopus okapi orca oriole osprey ostrich
otter owl ox panda panther parrot partridge peacock pelican penguin
pheasant pigeon pika platypus pony porcupine possum puffin puma quail
rabbit raccoon raven reindeer robin salmon seal shark sheep shrew
skunk sloth snail sparrow squid squirrel starling stingray stork swallow
swan tapir tern tiger toad toucan trout tuna turkey turtle
viper vole walrus warbler weasel whale wolf wombat wren yak zebra
`)

// Namer draws two-word node ids. Use NewNamer with a fixed seed in tests.
type Namer struct{ r *rand.Rand }

// NewNamer returns a Namer; seed 0 means a random seed.
func NewNamer(seed uint64) *Namer {
	if seed == 0 {
		seed = rand.Uint64()
	}
	return &Namer{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Next returns an id not in taken. The id space has more than 30,000
// entries, so after a bounded number of random draws it falls back to a scan
// from a random start, which always terminates.
func (n *Namer) Next(taken map[string]bool) (string, error) {
	total := len(adjectives) * len(animals)
	for range 64 {
		id := nameAt(n.r.IntN(total))
		if !taken[id] {
			return id, nil
		}
	}
	start := n.r.IntN(total)
	for i := range total {
		if id := nameAt((start + i) % total); !taken[id] {
			return id, nil
		}
	}
	return "", fmt.Errorf("all %d node ids are taken", total)
}

func nameAt(i int) string {
	return adjectives[i/len(animals)] + "-" + animals[i%len(animals)]
}
