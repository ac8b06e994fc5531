"""What may be cached and what may be served: normalising, language, and the guards.

An embedding says "opening hours on Sunday" and "opening hours" are nearly the same
sentence; the customer does not. So a cached answer is served only when, besides a high
similarity, both questions name the same *specifics*: numbers, days of the week,
months, relative days (today, tomorrow, weekend), parts of the day, negations, and
quantity words. And only questions that stand on their own are looked up at all: no
personal data, no "my …", no "it/that" pointing back into the conversation.

Word lists cover the languages our customers write: English, French, Spanish,
Portuguese, German, Swahili and Kinyarwanda. A word outside them is not a specific, so
the lists err towards refusing a hit (a miss costs one model call; a wrong hit costs
the customer's trust).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from difflib import SequenceMatcher
from itertools import pairwise

from graph.privacy import mask_text

_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*", re.UNICODE)
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)?")


def _canon(groups: dict[str, str]) -> dict[str, str]:
    """{"day:sun": "sunday sun dimanche …"} → {"sunday": "day:sun", …}"""
    return {word: key for key, words in groups.items() for word in words.split()}


# Words that change what the answer must say, mapped to one key per meaning.
SPECIFICS: dict[str, str] = _canon(
    {
        "day:mon": "monday mon lundi lunes segunda montag jumatatu kuwambere",
        "day:tue": "tuesday tue tues mardi martes terca dienstag jumanne kuwakabiri",
        "day:wed": "wednesday wed mercredi miercoles quarta mittwoch jumatano kuwagatatu",
        "day:thu": "thursday thu thurs jeudi jueves quinta donnerstag alhamisi kuwakane",
        "day:fri": "friday fri vendredi viernes sexta freitag ijumaa kuwagatanu",
        "day:sat": "saturday sat samedi sabado sabado samstag jumamosi kuwagatandatu",
        "day:sun": "sunday sun dimanche domingo sonntag jumapili kucyumweru cyumweru",
        "day:weekend": "weekend weekends week-end wochenende",
        "day:weekday": "weekday weekdays weekdays semaine",
        "day:holiday": "holiday holidays ferie feries feriado feriados feiertag sikukuu",
        "rel:today": "today tonight aujourd'hui ce soir hoy hoje heute leo uyu munsi",
        "rel:tomorrow": "tomorrow demain manana amanha morgen kesho ejo",
        "rel:yesterday": "yesterday hier ayer ontem gestern jana",
        "rel:now": "now maintenant ahora agora jetzt sasa ubu",
        "part:morning": "morning mornings matin morgens asubuhi mugitondo",
        "part:evening": "evening evenings night nights soir nuit noche noite abend jioni usiku",
        "part:afternoon": "afternoon apres-midi tarde nachmittag mchana",
        "neg:not": "not no don't doesn't isn't aren't can't cannot won't without never "
        "pas sans jamais ne sin nunca nao sem nicht ohne kein keine bila hapana",
        "qty:half": "half demi demie medio media meio meia halbe halben halb nusu",
        "qty:many": "many multiple several group groups plusieurs varios varias mehrere",
        # Articles that double as "one" (un, una, ein) are left out on purpose.
        "num:1": "one single",
        "num:2": "two deux dos dois duas zwei mbili couple pair",
        "num:3": "three trois tres drei tatu",
        "num:4": "four quatre cuatro quatro vier nne",
        "num:5": "five cinq cinco funf tano",
        "num:6": "six seis sechs sita",
        "num:7": "seven sept siete sete sieben saba",
        "num:8": "eight huit ocho oito acht nane",
        "num:9": "nine neuf nueve nove neun tisa",
        "num:10": "ten dix diez dez zehn kumi",
        "month:jan": "january janvier enero janeiro januar",
        "month:feb": "february fevrier febrero fevereiro februar",
        "month:mar": "march mars marzo marco marz",
        "month:apr": "april avril abril",
        "month:may": "mai mayo maio",
        "month:jun": "june juin junio junho juni",
        "month:jul": "july juillet julio julho juli",
        "month:aug": "august aout agosto",
        "month:sep": "september septembre septiembre setembro",
        "month:oct": "october octobre octubre outubro oktober",
        "month:nov": "november novembre noviembre novembro",
        "month:dec": "december decembre diciembre dezembro dezember",
        "dur:day": "day days jour jours journee journees dia dias jornada tag tage siku",
        "dur:week": "week weeks semaine semaines semana semanas woche wochen wiki",
        "dur:month": "month months mois mes meses monat monate mwezi",
        "where:outside": "outside beyond hors fuera fora ausserhalb nje",
        "cur:usd": "dollar dollars usd",
        "cur:eur": "euro euros eur",
        "cur:rwf": "franc francs rwf frw",
        "act:open": "open opens opening opened ouvre ouvrez ouvert ouverts ouverture abre abren "
        "abierto abrem aberto offnen geoffnet fungua mnafungua mufungura",
        "act:close": "close closes closing closed ferme fermez fermes fermeture cierra cierran "
        "cerrado fecham fechado schliessen geschlossen funga mnafunga mufunga",
        "kid:child": "child children kid kids kids' enfant enfants nino ninos crianca kind kinder "
        "mtoto watoto umwana abana",
    }
)

# Questions about the customer's own things depend on who asks.
_FIRST_PERSON_POSSESSIVE = frozenset(
    "my mine myself mon ma mes moi mi mis meu minha meus minhas mein meine meinen meiner "
    "yangu wangu changu langu zangu wanjye yanjye byanjye".split()
)
# Words that point back into the conversation: the question does not stand alone.
_ANAPHORA = frozenset(
    "it its that this these those them they ones there same ca cela celui celle ceux "
    "eso esto esa ese isso isto das dies hiyo hilo".split()
)
_FOLLOW_UP = frozenset(
    {
        "and",
        "or",
        "but",
        "also",
        "et",
        "ou",
        "mais",
        "y",
        "o",
        "pero",
        "e",
        "und",
        "oder",
        "na",
        "what about",
        "how about",
        "et pour",
        "y para",
        "und am",
        "what if",
    }
)
_FUNCTION = frozenset(
    "what when where which with your have does from about could would should will shall "
    "there their were been being much many some quel quels quelle quand comment avec pour "
    "cuando donde como para quando onde wann warum".split()
)
_GREETINGS = frozenset(
    "hi hello hey hallo hola ola bonjour bonsoir salut muraho mwaramutse habari jambo "
    "please pls plz svp bitte thanks thank dear excuse sir madam".split()
)
_GREETING_PAIRS = frozenset(
    {"good morning", "good afternoon", "good evening", "thank you", "por favor", "s'il vous"}
)
_STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset(
        "the is are do you what when how where which can a an of to for i your".split()
    ),
    "fr": frozenset(
        "le la les est vous quels quel quelle quand comment ou je des du une un".split()
    ),
    "es": frozenset("el la los es son usted que cuando como donde puedo una un del para".split()),
    "pt": frozenset("o a os e sao voce que quando como onde posso uma um do da para".split()),
    "de": frozenset("der die das ist sind sie was wann wie wo kann ich ein eine fur".split()),
    "sw": frozenset("je ni nini lini wapi vipi kwa na ya wa mna naweza bei gani".split()),
    "rw": frozenset("ni iki ryari he gute mufite nshobora igiciro angahe muri mu ku".split()),
}


def plain(text: str) -> str:
    """Casefolded, accents removed, typographic apostrophes straightened."""
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).replace("’", "'")


def words(text: str) -> list[str]:
    return _WORD.findall(plain(text))


def normalise(text: str) -> str:
    """The question as it is compared and stored: plain words, greetings and politeness
    at either end dropped ("Hi! What are your hours please?" → "what are your hours")."""
    tokens = words(text)
    while tokens:
        if " ".join(tokens[:2]) in _GREETING_PAIRS:
            del tokens[:2]
        elif tokens[0] in _GREETINGS:
            del tokens[0]
        else:
            break
    while tokens:
        if " ".join(tokens[-2:]) in _GREETING_PAIRS:
            del tokens[-2:]
        elif tokens[-1] in _GREETINGS:
            del tokens[-1]
        else:
            break
    return " ".join(tokens)


def language(text: str) -> str:
    """The language with most stop words in `text`; "und" when none is recognised."""
    tokens = words(text)
    scores = {lang: sum(t in stop for t in tokens) for lang, stop in _STOPWORDS.items()}
    best = max(scores, key=lambda lang: scores[lang])
    return best if scores[best] > 0 else "und"


def _specific(token: str) -> str | None:
    """The token's meaning key; plurals ("sundays", "samedis") by their singular."""
    if token in SPECIFICS:
        return SPECIFICS[token]
    if token.endswith("s") and token[:-1] in SPECIFICS:
        return SPECIFICS[token[:-1]]
    return None


def specifics(text: str) -> frozenset[str]:
    """Numbers and the meanings in SPECIFICS that `text` names."""
    found = {f"num:{n.replace(',', '.')}" for n in _NUMBER.findall(text)}
    tokens = words(text)
    parts = [part for token in tokens if "-" in token for part in token.split("-")]
    found.update(key for key in map(_specific, [*tokens, *parts]) if key is not None)
    bigrams = (f"{a} {b}" for a, b in pairwise(tokens))
    found.update(SPECIFICS[b] for b in bigrams if b in SPECIFICS)
    return frozenset(found)


def same_specifics(question: str, cached: str) -> bool:
    """Equal specifics; opening and closing only count when both questions name one
    ("when do you close?" is answered by the opening hours, not by "when do you open?")."""
    asked, known = specifics(question), specifics(cached)
    strict_asked = {k for k in asked if not k.startswith("act:")}
    strict_known = {k for k in known if not k.startswith("act:")}
    if strict_asked != strict_known:
        return False
    acts_asked = asked - strict_asked
    acts_known = known - strict_known
    return not acts_asked or not acts_known or acts_asked == acts_known


def is_personal(text: str) -> bool:
    """Personal data (phone, e-mail, card, IBAN, id numbers: graph/privacy.py) or a
    question about the customer's own things."""
    if mask_text(text) != text:
        return True
    return any(t in _FIRST_PERSON_POSSESSIVE for t in words(text))


def stands_alone(normalised: str, *, min_chars: int = 12, min_content: int = 3) -> bool:
    """Long enough to be a question by itself, and pointing at nothing said before: not
    a follow-up ("and on Sunday?", "what about helmets?"), and a pronoun like "it" or
    "that" only beside enough words of substance ("how much does it cost to rent a
    bike" yes, "how much is it" no)."""
    tokens = normalised.split()
    if len(normalised) < min_chars or len(tokens) < 2:
        return False
    if tokens[0] in _FOLLOW_UP or " ".join(tokens[:2]) in _FOLLOW_UP:
        return False
    if not any(t in _ANAPHORA for t in tokens):
        return True
    content = [t for t in tokens if len(t) > 3 and t not in _ANAPHORA and t not in _FUNCTION]
    return len(content) >= min_content


def mentions(text: str, names: Iterable[str]) -> bool:
    """Whether `text` contains any of `names` as words (the customer's name in a reply)."""
    tokens = set(words(text))
    return any(part in tokens for name in names for part in words(name) if len(part) > 2)


# Words that carry no topic: what a paraphrase changes freely.
_GLUE = frozenset(
    "a an the to of for in on at by with and or i you we your our me us is are was be been "
    "do does did can could may might get got have has had please out up about from how what "
    "when where which who why much there it this that le la les un une de des du au aux est "
    "sont vous nous je tu il elle pour avec dans sur par pouvez peux peut est-ce que qui "
    "c'est ce cet cette el los las una del es son en para por con que se lo al o e um uma "
    "os as der die das ein eine ist sind ich sie wir mit fur von zu am im je ni na kwa ya wa "
    "la za".split()
)


def stem(word: str) -> str:
    """A light, language-blind stem: enough to match "opening"/"open", "bikes"/"bike"."""
    word = word.removesuffix("'s")
    for suffix, longer_than in (("ing", 5), ("ed", 4), ("es", 4)):
        if word.endswith(suffix) and len(word) > longer_than:
            word = word[: -len(suffix)]
            break
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        word = word[:-1]
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


# Words for one idea in the ways customers ask it: a paraphrase swapping them is no
# substitution ("what does X cost" / "what do you charge for X").
_SAME_IDEA: dict[str, str] = _canon(
    {
        "=price": "price prices cost costs charge charges prix coute combien precio cuesta "
        "cuanto preco custa preis kostet bei kiasi",
        "=rent": "rent rents rental renting hire hiring louer location loue alquilar alquiler "
        "alugar aluguel mieten kukodisha",
        "=deliver": "deliver delivers delivery delivering livrer livrez livraison livre "
        "entregar entrega liefern lieferung",
        "=buy": "buy sell sells sold sale purchase acheter vendez vend vendre comprar vender "
        "kaufen verkaufen kununua",
        "=time": "long time take takes duration duree tiempo tarda tempo dauer muda",
        "=open": "open opens opening opened ouvre ouvrez ouvert ouverts ouverture abren "
        "abierto abre abierta wazi",
    }
)


def _topic_words(normalised: str) -> list[str]:
    return [
        _SAME_IDEA.get(t, t)
        for t in normalised.split()
        if t not in _GLUE and _specific(t) is None and not _NUMBER.fullmatch(t) and len(t) > 1
    ]


def substitutions(question: str, cached: str) -> list[tuple[str, str]]:
    """Topic words of one question replaced by other topic words in the other, in the
    same place ("deliver a *bell* to *Huye*" / "deliver a *basket* to *Remera*"). Words
    only added or only dropped are not substitutions: the embedding judges those."""
    asked, known = _topic_words(question), _topic_words(cached)
    stems = ([stem(w) for w in asked], [stem(w) for w in known])
    only_asked = [w for w, s in zip(asked, stems[0], strict=True) if s not in stems[1]]
    only_known = [w for w, s in zip(known, stems[1], strict=True) if s not in stems[0]]
    if not only_asked or not only_known:
        return []
    matcher = SequenceMatcher(a=stems[0], b=stems[1], autojunk=False)
    pairs = [
        (" ".join(asked[a0:a1]), " ".join(known[b0:b1]))
        for tag, a0, a1, b0, b1 in matcher.get_opcodes()
        if tag == "replace"
    ]
    return pairs or [(" ".join(only_asked), " ".join(only_known))]
