"""Names, domains, subjects and sentences the mail generator draws from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    """A support topic: subject templates and body paragraphs to sample."""

    name: str
    subjects: tuple[str, ...]
    paragraphs: tuple[str, ...]


@dataclass(frozen=True)
class Language:
    """Localised subjects and text for the foreign-charset messages."""

    code: str
    charsets: tuple[str, ...]  # legacy charsets this text is written for
    subjects: tuple[str, ...]
    greeting: str
    paragraphs: tuple[str, ...]
    closing: str
    attachment_names: tuple[str, ...]


EN_FIRST = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas",
    "Sarah", "Charles", "Karen", "Daniel", "Nancy", "Matthew", "Lisa", "Anthony", "Priya",
    "Mark", "Aisha", "Kevin", "Emily",
)
EN_LAST = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Wilson",
    "Anderson", "Taylor", "Thomas", "Moore", "Jackson", "Martin", "Lee", "Thompson", "White",
    "Harris", "Clark", "Lewis", "Walker", "Young", "Allen", "King", "O'Brien", "Patel", "Nguyen",
)

# (display name in its own script, ASCII local part)
NATIVE_NAMES: dict[str, tuple[tuple[str, str], ...]] = {
    "de": (
        ("Jürgen Müller", "juergen.mueller"), ("Sabine Schäfer", "sabine.schaefer"),
        ("Klaus Weiß", "klaus.weiss"), ("Anja Köhler", "anja.koehler"),
        ("Stefan Groß", "stefan.gross"), ("Birgit Hoffmann", "birgit.hoffmann"),
        ("Matthias Bäcker", "matthias.baecker"), ("Ute Krüger", "ute.krueger"),
    ),
    "fr": (
        ("Éloïse Lefèvre", "eloise.lefevre"), ("François Dubois", "francois.dubois"),
        ("Hélène Moreau", "helene.moreau"), ("Jérôme Girard", "jerome.girard"),
        ("Cécile Bérard", "cecile.berard"), ("Noël Castaño", "noel.castano"),
    ),
    "es": (
        ("José Martínez", "jose.martinez"), ("María Fernández", "maria.fernandez"),
        ("Begoña Muñoz", "begona.munoz"), ("Íñigo Sánchez", "inigo.sanchez"),
        ("Lucía Gómez", "lucia.gomez"),
    ),
    "ru": (
        ("Ирина Смирнова", "irina.smirnova"), ("Алексей Кузнецов", "aleksey.kuznetsov"),
        ("Ольга Попова", "olga.popova"), ("Дмитрий Волков", "dmitry.volkov"),
        ("Наталья Соколова", "natalya.sokolova"), ("Сергей Морозов", "sergey.morozov"),
    ),
    "ja": (
        ("佐藤 健", "ken.sato"), ("鈴木 花子", "hanako.suzuki"), ("高橋 大輔", "daisuke.takahashi"),
        ("田中 美咲", "misaki.tanaka"), ("伊藤 翔", "sho.ito"),
    ),
    "zh": (
        ("王伟", "wei.wang"), ("李娜", "na.li"), ("张敏", "min.zhang"), ("刘洋", "yang.liu"),
        ("陈静", "jing.chen"), ("杨磊", "lei.yang"),
    ),
}

# How many customers of each language make up the pool of 60.
POOL = (("en", 30), ("de", 7), ("fr", 5), ("es", 4), ("ru", 5), ("ja", 4), ("zh", 5))

DOMAINS: dict[str, tuple[str, ...]] = {
    "en": ("example.com", "example.net", "example.org", "acme.example", "globex.example",
           "initech.example", "mail.example.com"),
    "de": ("logistik-nord.example", "stadtwerke-sued.example", "praxis-koehler.example"),
    "fr": ("boulangerie-dubois.example", "agence-lumiere.example"),
    "es": ("talleres-iberia.example", "clinica-sol.example"),
    "ru": ("sibtech.example", "volga-soft.example"),
    "ja": ("sakura-trading.example", "tokyo-design.example"),
    "zh": ("huaxin-tech.example", "jinlong-trade.example"),
}

# UTC offsets in minutes a customer of each language may be in.
ZONES: dict[str, tuple[int, ...]] = {
    "en": (-300, -480, 0, 60, -360), "de": (60,), "fr": (60,), "es": (60,),
    "ru": (180,), "ja": (540,), "zh": (480,),
}

COMPANIES = (
    "Acme Corp", "Globex Ltd", "Initech", "Umbrella Health", "Stark Logistics", "Wayne Foods",
    "Hooli", "Vandelay Industries", "Soylent Co", "Pied Piper", "Cyberdyne Systems",
    "Tyrell Analytics",
)

MAILERS = ("thunderbird", "outlook", "gmail", "apple", "roundcube")

TOPICS: tuple[Topic, ...] = (
    Topic(
        "login",
        (
            "Can't log in since this morning",
            "Password reset email never arrives",
            "Account locked after too many attempts",
            "2FA code not accepted",
            "SSO login loops back to the sign-in page",
            "Login fails with error {code}",
        ),
        (
            "Since this morning none of us can log in. The sign-in page accepts the password "
            "and then shows \"Your session has expired\" again and again.",
            "I requested a password reset three times now, but the email never arrives. I "
            "checked the spam folder and asked our IT to look at the mail gateway logs.",
            "My account got locked after I mistyped the password a few times. Could you "
            "please unlock it? My username is the address I'm writing from.",
            "The six-digit code from the authenticator app is rejected every time. The clock "
            "on my phone is set automatically, so it should not be a time drift problem.",
            "When I click \"Sign in with SSO\" I'm sent to our identity provider, I log in "
            "there, and then I land on your sign-in page again. It loops forever.",
            "We tried Chrome, Firefox and Edge, private windows too, and cleared the cookies. "
            "Same result everywhere.",
            "This blocks our whole team of {seats} people, so it's quite urgent for us.",
        ),
    ),
    Topic(
        "billing",
        (
            "Invoice {invoice} shows the wrong amount",
            "Question about invoice {invoice}",
            "Charged twice in {month}",
            "Please update our billing address",
            "VAT number missing on invoice {invoice}",
            "Cancel subscription and refund",
            "Credit card payment failed",
        ),
        (
            "Invoice {invoice} lists {seats} seats, but we reduced our plan to {seats2} seats "
            "last month. Could you please send a corrected invoice?",
            "Our credit card was charged twice in {month}, both times for the same amount. "
            "Please refund the duplicate payment.",
            "We moved offices. The new billing address is 42 Harbour Street, Suite 300, "
            "Springfield. Please use it for all future invoices.",
            "Our accounting department needs our VAT number on the invoice, otherwise they "
            "cannot book it. The number is in our account settings.",
            "We'd like to cancel our subscription at the end of the current term and get a "
            "pro-rata refund for the unused months.",
            "The renewal payment failed and now the dashboard shows a red banner. The card is "
            "valid until 2027, so I'm not sure what went wrong.",
            "Could you also tell me whether you accept bank transfers? That would be easier "
            "for us than credit cards.",
        ),
    ),
    Topic(
        "outage",
        (
            "Dashboard not loading - 502 Bad Gateway",
            "API returning 503 errors since {time}",
            "Site is down for all our users",
            "Very slow response times today",
            "Webhooks stopped firing",
            "URGENT: service unavailable",
        ),
        (
            "Since about {time} the dashboard returns \"502 Bad Gateway\" for everyone in our "
            "office. Your status page still says all systems are operational.",
            "Our integration gets HTTP 503 from the API for roughly one request in three. "
            "Request IDs from the last failures: {reqid}, {reqid2}.",
            "Pages take 20 to 30 seconds to load today. Yesterday everything was fast.",
            "Our webhook endpoint has not received a single event since yesterday evening. We "
            "checked our side and the endpoint answers 200 to manual tests.",
            "This is affecting our customers directly, please treat it as urgent.",
            "Is there an incident going on? We can't find anything on the status page.",
        ),
    ),
    Topic(
        "feature",
        (
            "Feature request: export to Excel",
            "Would be great to have dark mode",
            "Feature request: bulk edit for contacts",
            "Can you add an API endpoint for reports?",
            "Suggestion: keyboard shortcuts",
            "Feature request: custom fields on tickets",
        ),
        (
            "It would save us a lot of time if we could export the reports directly to Excel "
            "instead of CSV, with the formatting kept.",
            "Many of our staff work night shifts and would love a dark mode.",
            "We regularly need to change the owner of 50+ contacts at once. A bulk edit would "
            "help a lot; today we click through them one by one.",
            "We'd like to pull the monthly reports through the API so we can feed them into "
            "our own BI tool. Is anything like that planned?",
            "Not urgent at all, just a suggestion from our team. Thanks for listening!",
        ),
    ),
    Topic(
        "howto",
        (
            "How do I add a new user to our team?",
            "How can I change the email address on my account?",
            "How do I connect the calendar integration?",
            "Where can I download my data?",
            "How do I set up SAML SSO?",
            "Question about user roles",
        ),
        (
            "We hired two new colleagues and I can't find where to invite them. I'm the "
            "account owner, so I should have the rights.",
            "I'd like to change the email address I log in with to my new work address. Is "
            "that possible without losing my history?",
            "I followed the help article for the calendar integration but step 4 mentions a "
            "button I don't see in my settings.",
            "For our yearly audit we need a full export of our data. Where do I find it?",
            "Could you point me to the documentation for setting up SAML with our identity "
            "provider? We use Azure AD.",
            "What is the difference between the \"Editor\" and the \"Manager\" role?",
        ),
    ),
    Topic(
        "bug",
        (
            "Error {code} when uploading a file",
            "Report export is missing the last column",
            "Search returns no results for names with umlauts",
            "Mobile app crashes on start",
            "Timezone wrong in email notifications",
            "Bug: duplicate entries after import",
        ),
        (
            "When I upload a PDF larger than about 10 MB I get error {code} and the upload "
            "stops at 99 %.",
            "The CSV export of the monthly report is missing the last column (\"Total\"). It "
            "was there until last week.",
            "Searching for customers whose names contain umlauts returns nothing, although "
            "they are clearly in the list.",
            "The iOS app crashes right after the splash screen since the latest update. "
            "Reinstalling didn't help.",
            "The notification emails show times in UTC although my profile is set to Berlin "
            "time.",
            "Steps to reproduce:\n1. Open Settings > Import\n2. Upload the attached CSV\n"
            "3. Click Import\nExpected: 120 contacts. Actual: 240 contacts, each twice.",
            "Browser: Firefox 123 on Windows 11. Account ID: {account}.",
        ),
    ),
)

GREETINGS = ("Hello,", "Hi there,", "Dear support team,", "Hi,", "Good morning,", "Hello support,")
CLOSINGS = ("Thanks,", "Best regards,", "Kind regards,", "Thanks in advance,", "Cheers,",
            "Many thanks,")

FOLLOW_UPS = (
    "Any update on this? We are still affected.",
    "Thanks for the quick answer, that worked!",
    "I'm afraid the problem is back since this morning.",
    "Just following up - could someone please look into this?",
    "Thank you. One more question: does this also apply to our second account?",
    "I tried what you suggested but nothing changed.",
    "Sorry, I forgot to mention: we are on the Business plan.",
    "Please close this ticket, we found the cause on our side.",
)

ATTACHMENT_NAMES_ASCII = (
    "invoice-{invoice}.pdf", "screenshot.png", "export.csv", "error-log.txt",
    "Screenshot 2024-03-04 at 10.15.22.png", "contacts_import.csv", "contract_signed.pdf",
)

# Localised text. Each language's strings must encode in every charset it lists.
LANGUAGES: dict[str, Language] = {
    "de": Language(
        "de", ("iso-8859-1",),
        (
            "Anmeldung nicht möglich", "Frage zur Rechnung {invoice}",
            "Störung: Dashboard lädt nicht", "Passwort zurücksetzen funktioniert nicht",
            "Wie ändere ich die Rechnungsadresse?", "Export nach Excel gewünscht",
        ),
        "Sehr geehrte Damen und Herren,",
        (
            "seit heute Morgen können sich unsere Mitarbeiter nicht mehr anmelden. Es "
            "erscheint immer die Meldung \"Sitzung abgelaufen\".",
            "auf der Rechnung {invoice} sind {seats} Lizenzen aufgeführt, wir haben aber nur "
            "{seats2} gebucht. Bitte schicken Sie uns eine korrigierte Rechnung.",
            "das Dashboard lädt seit {time} Uhr nicht mehr. Wir bekommen nur eine weiße Seite.",
            "die E-Mail zum Zurücksetzen des Passworts kommt nicht an. Der Spam-Ordner ist "
            "leer.",
            "Könnten Sie uns bitte mitteilen, wie wir die Rechnungsanschrift ändern? Unsere "
            "neue Adresse lautet: Hauptstraße 12, 80331 München.",
            "Für unsere Buchhaltung wäre ein Export nach Excel sehr hilfreich. Grüße an das "
            "ganze Team!",
        ),
        "Mit freundlichen Grüßen",
        ("Rechnung März.pdf", "Übersicht_Bestellungen.csv", "Fehlermeldung Größe.png"),
    ),
    "fr": Language(
        "fr", ("iso-8859-1",),
        (
            "Impossible de me connecter", "Question sur la facture {invoice}",
            "Problème d'accès au tableau de bord", "Demande de fonctionnalité : export Excel",
            "Comment changer l'adresse de facturation ?",
        ),
        "Bonjour,",
        (
            "depuis ce matin, je ne peux plus me connecter à mon compte. Le message "
            "\"session expirée\" s'affiche à chaque tentative.",
            "la facture {invoice} indique {seats} licences alors que nous n'en avons que "
            "{seats2}. Pourriez-vous nous envoyer une facture corrigée ?",
            "le tableau de bord ne s'affiche plus depuis {time}. Nos équipes sont bloquées.",
            "serait-il possible d'exporter les rapports au format Excel ? Ce serait très "
            "pratique pour notre comptabilité.",
            "Je vous remercie par avance de votre aide et reste à votre disposition.",
        ),
        "Cordialement,",
        ("Facture détaillée.pdf", "capture d'écran.png", "données_clients.csv"),
    ),
    "es": Language(
        "es", ("iso-8859-1",),
        (
            "No puedo iniciar sesión", "Consulta sobre la factura {invoice}",
            "El panel no carga desde esta mañana", "¿Cómo añado un nuevo usuario?",
        ),
        "Buenos días:",
        (
            "desde esta mañana no puedo iniciar sesión. Aparece el mensaje \"sesión "
            "caducada\" una y otra vez.",
            "en la factura {invoice} aparecen {seats} licencias, pero sólo tenemos {seats2}. "
            "¿Podrían enviarnos una factura corregida?",
            "el panel de control no carga desde las {time}. ¿Hay alguna incidencia?",
            "Muchas gracias de antemano por su ayuda. Un saludo a todo el equipo.",
        ),
        "Atentamente,",
        ("Factura España.pdf", "captura_pantalla_señal.png", "clientes_año.csv"),
    ),
    "ru": Language(
        "ru", ("koi8-r",),
        (
            "Не могу войти в систему", "Вопрос по счёту {invoice}",
            "Не загружается панель управления", "Как добавить нового пользователя?",
            "Ошибка {code} при загрузке файла",
        ),
        "Здравствуйте!",
        (
            "С сегодняшнего утра не могу войти в систему. Каждый раз появляется сообщение "
            "\"Сессия истекла\".",
            "В счёте {invoice} указано {seats} лицензий, а у нас только {seats2}. Пришлите, "
            "пожалуйста, исправленный счёт.",
            "Панель управления не загружается с {time}. Вся команда не может работать.",
            "При загрузке файла больше 10 МБ появляется ошибка {code}.",
            "Заранее спасибо за помощь!",
        ),
        "С уважением,",
        ("скриншот ошибки.png", "счёт за март.pdf", "список клиентов.csv"),
    ),
    "ja": Language(
        "ja", ("iso-2022-jp",),
        (
            "ログインできません", "請求書 {invoice} について",
            "ダッシュボードが表示されません", "新しいユーザーの追加方法",
            "ファイルのアップロードでエラー {code}",
        ),
        "サポートご担当者様",
        (
            "いつもお世話になっております。今朝からシステムにログインできなくなりました。",
            "請求書 {invoice} に {seats} ライセンスと記載されていますが、契約は {seats2} "
            "ライセンスです。修正した請求書をお送りいただけますでしょうか。",
            "{time} 頃からダッシュボードが表示されず、業務に支障が出ております。",
            "新しいユーザーを追加する方法を教えていただけますか。",
            "お手数をおかけしますが、よろしくお願いいたします。",
        ),
        "よろしくお願いいたします。",
        ("請求書_3月.pdf", "画面のキャプチャ.png", "顧客一覧.csv"),
    ),
    "zh": Language(
        "zh", ("gb2312", "gb18030"),
        (
            "无法登录系统", "关于发票 {invoice} 的问题", "控制面板无法加载",
            "如何添加新用户？", "上传文件时出现错误 {code}",
        ),
        "您好！",
        (
            "从今天早上开始，我们无法登录系统，每次都提示\"会话已过期\"。",
            "发票 {invoice} 上写的是 {seats} 个许可证，但我们只购买了 {seats2} 个。请重新开具发票。",
            "控制面板从 {time} 开始无法加载，我们的团队无法正常工作。",
            "请问如何添加新用户？谢谢！",
            "麻烦您尽快处理，非常感谢。",
        ),
        "此致\n敬礼",
        ("发票说明.pdf", "错误截图.png", "客户列表.csv"),
    ),
}

# windows-1252 text: the characters that set it apart from iso-8859-1 (€ “ ” – …).
CP1252_SUBJECTS = (
    "Invoice {invoice} – €{amount} charged twice",
    "“Export” button greyed out",
    "Rechnung {invoice} – Betrag in € falsch",
)
CP1252_PARAGRAPHS = (
    "We were charged €{amount} twice on {month} 3rd – could you refund one of the payments?",
    "The “Export” button is greyed out for all users… is this intended?",
    "Der Betrag von €{amount} auf der Rechnung stimmt nicht – bitte prüfen.",
    "Thanks in advance – it’s the second time this happens.",
)

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
