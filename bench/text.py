"""Word material for the benchmark corpus: names, subjects and sentences in four languages.

Subjects include the words the shipped keyword rules react to ("down", "käyttökatko",
"sutrikimas", "dringend", "question"…), so triage does real work; most do not.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    code: str
    content_language: str | None  # what a client would put in Content-Language (None: nothing)
    reply_prefix: str
    charsets: tuple[str, ...]  # charsets real clients of this language use for RFC 2047 subjects
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    domains: tuple[str, ...]
    subjects: tuple[str, ...]
    sentences: tuple[str, ...]
    greeting: str
    closing: str


ENGLISH = Language(
    code="en",
    content_language="en-GB",
    reply_prefix="Re: ",
    charsets=("us-ascii", "utf-8"),
    first_names=("Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy"),
    last_names=("Smith", "Jones", "Taylor", "Brown", "Williams", "O'Neill", "Evans", "Walker"),
    domains=("customer.example", "acme-widgets.example", "northwind.example", "globex.example"),
    subjects=(
        "Cannot log in to the portal",
        "Invoice 2026-1187 has the wrong VAT number",
        "Question about the annual plan",
        "Site is down since 9:00",
        "Urgent: export fails with an error",
        "Feature request: dark mode for reports",
        "Password reset mail never arrives",
        "Payment failed twice – card is fine",
        "How do I add a second admin?",
        "Sync stopped working after the update",
        "Re-sending the signed contract",
        "Data export is missing the last week",
    ),
    sentences=(
        "We noticed the problem this morning when the first users came in.",
        "I have attached a screenshot of the error message we see.",
        "Could you please have a look at this as soon as possible?",
        "The issue started right after your maintenance window on Sunday.",
        "Our team of twelve people is affected, the other office is not.",
        "We already cleared the browser cache and tried another computer.",
        "The order number is 448-1192 and it was placed on the 3rd.",
        "Please let me know if you need any more details from our side.",
        "It worked fine last week, nothing changed in our configuration.",
        "Our accountant says the VAT number on the invoice is not ours.",
        "Is there a way to export everything as CSV instead of PDF?",
        "The confirmation mail mentions a link that leads to a 404 page.",
    ),
    greeting="Hello,",
    closing="Best regards,",
)

FINNISH = Language(
    code="fi",
    content_language="fi",
    reply_prefix="VS: ",
    charsets=("utf-8", "iso-8859-1", "iso-8859-15"),
    first_names=("Matti", "Liisa", "Jussi", "Päivi", "Sanna", "Jääkko", "Mikko", "Tiina", "Heikki", "Sirpa"),
    last_names=("Virtanen", "Korhonen", "Mäkinen", "Nieminen", "Hämäläinen", "Järvinen", "Lehtonen"),
    domains=("asiakas.example", "yritys-oy.example", "kauppa.example"),
    subjects=(
        "Kirjautuminen ei toimi",
        "Lasku on väärä – ALV-tunnus puuttuu",
        "Kysymys vuosisopimuksesta",
        "Palvelu alhaalla, käyttökatko aamusta asti",
        "Kiireellinen: raportin vienti epäonnistuu",
        "Salasanan vaihto ei onnistu",
        "Maksu epäonnistui kahdesti",
        "Miten lisään toisen pääkäyttäjän?",
        "Synkronointi pysähtyi päivityksen jälkeen",
        "Tilausvahvistus puuttuu",
    ),
    sentences=(
        "Huomasimme ongelman tänä aamuna, kun ensimmäiset käyttäjät kirjautuivat.",
        "Liitteenä on kuvakaappaus virheilmoituksesta.",
        "Voisitteko katsoa asiaa mahdollisimman pian?",
        "Ongelma alkoi heti sunnuntain huoltokatkon jälkeen.",
        "Kaksitoista käyttäjää on ongelman piirissä, toinen toimisto ei.",
        "Tyhjensimme jo selaimen välimuistin ja kokeilimme toista konetta.",
        "Tilausnumero on 448-1192 ja tilaus tehtiin kuun kolmantena.",
        "Kertokaa, jos tarvitsette meiltä lisätietoja.",
        "Viime viikolla kaikki toimi, emmekä ole muuttaneet asetuksia.",
        "Kirjanpitäjämme mukaan laskun ALV-tunnus ei ole meidän.",
    ),
    greeting="Hei,",
    closing="Ystävällisin terveisin,",
)

LITHUANIAN = Language(
    code="lt",
    content_language="lt",
    reply_prefix="Ats: ",
    charsets=("utf-8", "iso-8859-13", "windows-1257"),
    first_names=("Jonas", "Rūta", "Tomas", "Eglė", "Mantas", "Aušra", "Žydrūnas", "Gintarė", "Šarūnas"),
    last_names=("Kazlauskas", "Jankauskienė", "Petrauskas", "Žukauskas", "Stankevičius", "Vasiliauskaitė"),
    domains=("klientas.example", "imone.example", "parduotuve.example"),
    subjects=(
        "Negaliu prisijungti prie portalo",
        "Sąskaitoje klaidingas PVM kodas",
        "Klausimas dėl metinio plano",
        "Paslaugos sutrikimas nuo ryto",
        "Skubu: eksportas neveikia",
        "Slaptažodžio keitimo laiškas neateina",
        "Mokėjimas nepavyko du kartus",
        "Kaip pridėti antrą administratorių?",
        "Sinchronizacija sustojo po atnaujinimo",
    ),
    sentences=(
        "Problemą pastebėjome šį rytą, kai prisijungė pirmieji naudotojai.",
        "Pridedu klaidos pranešimo ekrano nuotrauką.",
        "Ar galėtumėte kuo greičiau pažiūrėti?",
        "Problema prasidėjo iškart po sekmadienio techninės priežiūros.",
        "Paveikta dvylika žmonių, kitas biuras veikia.",
        "Jau išvalėme naršyklės talpyklą ir bandėme kitą kompiuterį.",
        "Užsakymo numeris 448-1192, užsakyta trečią dieną.",
        "Praneškite, jei reikia daugiau informacijos iš mūsų.",
        "Praėjusią savaitę viskas veikė, nieko nekeitėme.",
        "Mūsų buhalterė sako, kad sąskaitoje nurodytas ne mūsų PVM kodas.",
    ),
    greeting="Laba diena,",
    closing="Pagarbiai,",
)

GERMAN = Language(
    code="de",
    content_language=None,  # mailgate has no German templates: the queue's language applies
    reply_prefix="AW: ",
    charsets=("utf-8", "iso-8859-1", "iso-8859-15"),
    first_names=("Jürgen", "Anna", "Lukas", "Sophie", "Jörg", "Märta", "Felix", "Brigitte", "Uwe"),
    last_names=("Müller", "Schmidt", "Schneider", "Fischer", "Weiß", "Groß", "Becker", "Schäfer"),
    domains=("kunde.example", "firma-gmbh.example", "haendler.example"),
    subjects=(
        "Anmeldung funktioniert nicht",
        "Rechnung mit falscher USt-IdNr.",
        "Frage zum Jahresabonnement",
        "Störung seit heute früh – Serverausfall?",
        "Dringend: Export schlägt fehl",
        "E-Mail zum Zurücksetzen des Passworts kommt nicht an",
        "Zahlung fehlgeschlagen",
        "Wie füge ich einen zweiten Administrator hinzu?",
        "Synchronisierung gestoppt nach dem Update",
    ),
    sentences=(
        "Wir haben das Problem heute Morgen bemerkt, als sich die ersten Nutzer anmeldeten.",
        "Im Anhang finden Sie einen Screenshot der Fehlermeldung.",
        "Könnten Sie sich das bitte so schnell wie möglich ansehen?",
        "Das Problem begann direkt nach Ihrer Wartung am Sonntag.",
        "Zwölf Personen sind betroffen, das andere Büro nicht.",
        "Wir haben den Browser-Cache geleert und einen anderen Rechner probiert.",
        "Die Bestellnummer ist 448-1192, bestellt am Dritten.",
        "Bitte melden Sie sich, wenn Sie weitere Angaben benötigen.",
        "Letzte Woche lief alles, an unserer Konfiguration hat sich nichts geändert.",
        "Unsere Buchhaltung sagt, die USt-IdNr. auf der Rechnung gehört nicht uns.",
    ),
    greeting="Guten Tag,",
    closing="Mit freundlichen Grüßen,",
)

# Weights: mostly English, as at a European software vendor's help desk.
LANGUAGES: tuple[tuple[Language, int], ...] = ((ENGLISH, 5), (FINNISH, 2), (LITHUANIAN, 2), (GERMAN, 2))

QUOTE_INTRO = {
    "en": "On {date}, {name} wrote:",
    "fi": "{date} {name} kirjoitti:",
    "lt": "{date}, {name} rašė:",
    "de": "Am {date} schrieb {name}:",
}

SIGNATURE_LINES = (
    "Customer Services | Tel. +358 40 123 4567",
    "This e-mail and any attachments are confidential and intended solely for the addressee.",
    "Please consider the environment before printing this e-mail.",
)
