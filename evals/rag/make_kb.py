"""Builds the labelled retrieval set (documents.jsonl, queries.jsonl) from templates; deterministic.

Five topics (fictional cities, planets, companies, animals and programming languages), ten entities
each, four aspects per entity: 200 short documents. Each query paraphrases one aspect of one entity
without copying its document's wording; its one relevant document is that aspect's. Several documents
share each entity name, so a retriever must match the aspect, not only the name.

Run: python evals/rag/make_kb.py  (rewrites the two files beside it).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).parent
rng = random.Random(14)

TOPICS = {
    "city": {
        "names": ["Varnholt", "Quellmere", "Ostravik", "Belcanto", "Tirrowan", "Mazulet", "Dunbrake",
                  "Celestra", "Harrowgate", "Pellinor"],
        "aspects": {
            "river": ("The {v} river runs through {n}, and its old stone bridges carry the market road "
                      "across the water.", ["Sallow", "Ember", "Greywash", "Tamsin", "Orla", "Kettle",
                                            "Brindle", "Vossa", "Lumen", "Carrow"],
                      "Which waterway flows through {n}?"),
            "industry": ("Most families in {n} earn their living from {v}; the trade has shaped the "
                         "town for two centuries.", ["glassblowing", "salt mining", "silk weaving",
                                                     "shipbuilding", "clockmaking", "cheese making",
                                                     "paper milling", "copper smelting", "boat repair",
                                                     "wool dyeing"],
                         "What do most people in {n} do for work?"),
            "festival": ("Every autumn {n} celebrates the {v}, when streets fill with music and lanterns "
                         "for three nights.", ["Lantern Tide", "Harvest Bell", "Night of Kites",
                                               "Copper Moon", "Feast of Reeds", "Ash Parade",
                                               "Salt Dance", "Mirror Fair", "Owl Vigil", "Rain Carnival"],
                         "Which yearly celebration is held in {n}?"),
            "founding": ("{n} was founded in the year {v} by settlers who built a wooden fort on the "
                         "hill above the valley.", ["1182", "1204", "1311", "1378", "1420", "1466",
                                                    "1502", "1555", "1603", "1649"],
                         "When was {n} established?"),
        },
    },
    "planet": {
        "names": ["Zephyra", "Koltar", "Nimbus Prime", "Oberis", "Thessaly IV", "Drakon", "Myrrhal",
                  "Ysolde", "Quorra", "Antheon"],
        "aspects": {
            "atmosphere": ("The air of {n} is mostly {v}, which gives its sky an unusual colour at dusk.",
                           ["methane", "nitrogen and argon", "carbon dioxide", "neon", "sulfur vapour",
                            "hydrogen", "ammonia", "oxygen-rich haze", "helium", "chlorine mist"],
                           "What gases make up the sky of {n}?"),
            "moons": ("{n} is circled by {v} moons; the largest is tidally locked and covered in ice.",
                      ["two", "three", "four", "five", "six", "seven", "nine", "eleven", "twelve",
                       "fourteen"],
                      "How many natural satellites orbit {n}?"),
            "discovery": ("Astronomer {v} first spotted {n} through a mountain-top telescope and "
                          "published the finding in a short letter.",
                          ["Ilse Marrow", "Tomas Vey", "Reka Oduya", "Piet Langer", "Sana Idris",
                           "Hugo Brandt", "Mei Tanaka", "Oskar Lind", "Ada Kowal", "Yusuf Demir"],
                          "Who discovered {n}?"),
            "climate": ("Surface temperatures on {n} average {v} degrees, with storms that can last for "
                        "months.", ["minus 180", "minus 120", "minus 60", "minus 20", "plus 15",
                                    "plus 40", "plus 90", "plus 200", "plus 310", "plus 460"],
                        "How hot or cold is it on {n}?"),
        },
    },
    "company": {
        "names": ["Brightloom", "Corvex", "Fennwick Labs", "Haldane & Rook", "Lumora", "Nexwell",
                  "Orchid Systems", "Pallas Freight", "Quillstone", "Tessellate"],
        "aspects": {
            "product": ("{n} is best known for its {v}, sold in more than forty countries.",
                        ["solar roof tiles", "electric scooters", "noise-cancelling headphones",
                         "industrial 3D printers", "plant-based leather", "smart thermostats",
                         "cargo drones", "water filters", "e-book readers", "modular furniture"],
                        "What does {n} make?"),
            "headquarters": ("The head office of {n} sits in {v}, in a converted warehouse by the docks.",
                             ["Rotterdam", "Osaka", "Lagos", "Montreal", "Tallinn", "Valparaiso",
                              "Brisbane", "Gdansk", "Porto", "Nairobi"],
                             "Where is {n} based?"),
            "founder": ("{n} was started by {v} in a garage after she left her job at a bank.",
                        ["Lena Ortiz", "Grace Mbeki", "Hana Sato", "Iris Novak", "Clara Jensen",
                         "Maya Patel", "Nora Eklund", "Zoe Laurent", "Eva Rossi", "Ruth Okafor"],
                        "Who is the person behind the creation of {n}?"),
            "staff": ("{n} employs about {v} people and opened a second factory last year.",
                      ["120", "340", "800", "1,500", "2,300", "4,000", "6,500", "9,000", "12,000",
                       "20,000"],
                      "How large is the workforce of {n}?"),
        },
    },
    "animal": {
        "names": ["the marsh glider", "the crested vole", "the ember newt", "the dune hare",
                  "the fog heron", "the striped tarn", "the cliff lemur", "the reed otter",
                  "the ghost moth", "the amber tortoise"],
        "aspects": {
            "habitat": ("{N} lives in {v}, where it shelters under roots and stones.",
                        ["mangrove swamps", "alpine meadows", "volcanic caves", "coastal dunes",
                         "cloud forests", "glacial lakes", "sea cliffs", "river deltas",
                         "pine woodland", "desert canyons"],
                        "Where can {n} be found in the wild?"),
            "diet": ("{N} feeds mainly on {v}, foraging at dawn and dusk.",
                     ["beetles", "seeds and berries", "small fish", "snails", "tree sap", "algae",
                      "grasshoppers", "fallen fruit", "crayfish", "mosses"],
                     "What does {n} eat?"),
            "lifespan": ("In captivity {n} can reach {v} years of age, far longer than in the wild.",
                         ["four", "six", "eight", "ten", "twelve", "fifteen", "twenty", "thirty",
                          "forty", "ninety"],
                         "How long does {n} live?"),
            "behaviour": ("{N} is known for {v}, a habit that puzzled early naturalists.",
                          ["drumming on hollow logs", "sleeping upside down", "building mud towers",
                           "humming at night", "carrying pebbles", "changing colour in the rain",
                           "migrating in spirals", "sharing burrows with birds", "playing dead",
                           "dancing in pairs"],
                          "What unusual habit does {n} have?"),
        },
    },
    "language": {
        "names": ["Krait", "Moss", "Pelican", "Zinc", "Orrery", "Halyard", "Quiver", "Saffron",
                  "Tundra", "Wicket"],
        "aspects": {
            "purpose": ("The {n} programming language was designed for {v}, and its standard library "
                        "reflects that focus.", ["embedded controllers", "data pipelines", "game scripting",
                                                 "scientific computing", "web servers", "smart contracts",
                                                 "spreadsheet formulas", "robot control", "teaching children",
                                                 "audio synthesis"],
                        "What kind of software is {n} meant for?"),
            "creator": ("{v} wrote the first compiler for {n} while working at a university lab.",
                        ["Arjun Rao", "Sofia Berg", "Kenji Mori", "Leila Haddad", "Marek Zielinski",
                         "Ingrid Holm", "Diego Silva", "Fatima Noor", "Colin Reyes", "Anya Petrova"],
                        "Who created the {n} language?"),
            "typing": ("{n} uses {v} typing, which its users either love or complain about.",
                       ["static", "dynamic", "gradual", "dependent", "structural", "nominal", "duck",
                        "linear", "optional", "strong inferred"],
                       "What type system does {n} have?"),
            "license": ("The reference implementation of {n} is released under the {v} license.",
                        ["MIT", "Apache 2.0", "GPL 3", "BSD 3-clause", "MPL 2.0", "LGPL", "ISC",
                         "Unlicense", "EPL 2.0", "zlib"],
                        "Under what terms can {n} be used and redistributed?"),
        },
    },
}


def main() -> None:
    docs, queries = [], []
    for topic, spec in TOPICS.items():
        for e, name in enumerate(spec["names"]):
            slug = name.removeprefix("the ").lower().replace(" ", "-").replace("&", "and")
            for aspect, (template, values, question) in spec["aspects"].items():
                value = values[(e * 3 + len(aspect)) % len(values)]
                text = template.format(n=name, N=name[0].upper() + name[1:], v=value)
                doc_id = f"{topic}-{slug}-{aspect}"
                docs.append({"id": doc_id, "text": text, "metadata": {"topic": topic}})
                queries.append({"id": f"q-{doc_id}", "query": question.format(n=name), "relevant": [doc_id]})
    rng.shuffle(queries)
    chosen = sorted(queries[:60], key=lambda q: q["id"])
    (HERE / "documents.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (HERE / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in chosen))
    print(f"{len(docs)} documents, {len(chosen)} queries")


if __name__ == "__main__":
    main()
